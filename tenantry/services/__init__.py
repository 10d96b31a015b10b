"""The service layer.

Functions take the connections or sessions they need; callers own the transactions.
"""
