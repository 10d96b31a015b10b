"""Client portal (seed 003): a separate app over the billing schema it does not own."""
