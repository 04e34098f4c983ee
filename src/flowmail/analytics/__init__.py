"""The analytics collector: funnels per workflow, version and step; email engagement;
conversions and revenue credited to emails; A/B split statistics; health and alerts.

Counts come from the ``stats`` table, kept by database triggers in the same transaction
as the rows they count (so a crashed worker never leaves them off by one); the figures
here are read from it and shaped into :mod:`flowmail.analytics.model`.
"""
