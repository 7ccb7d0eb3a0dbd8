"""Usage reports (seed 001): CSV and PDF exports of a customer's usage, built by a job, downloaded by signed link."""
