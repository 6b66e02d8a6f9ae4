"""Ballots (issue 16): a point-day's places released by a draw instead of first-come.

``models`` (ballot, ballot_entry), ``rounds`` (creating a ballot, its status, the
slots it holds), ``entering`` (one resident's entry), ``draw`` (the draw and its
algorithm), ``proof`` (the published list and proof, and their verification),
``views`` (the resident pages, blueprint ``bp``), ``cli`` (``flask ballots``).
"""
