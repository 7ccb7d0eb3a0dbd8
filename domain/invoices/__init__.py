"""Monthly invoices: each calendar month (UTC) of invoice-billed usage closed once per customer, numbered without
gaps per partner, rendered as a white-label PDF, emailed, announced (`invoice.finalized`) and paid."""
