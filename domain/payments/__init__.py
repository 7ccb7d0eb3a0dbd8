"""Card payments through a payment provider (Stripe), beside the manual provider of stage 1: the billing portal,
wallet top-ups by card (checkout and automatic), provider events, and paying invoices."""
