"""Messages to residents: the outbox (``outbox``), their text (``messages``), the
channels that carry them (``channels``) and the relay that delivers them (``relay``).

Dependencies point one way: ``slots`` queues notices through ``notify.outbox``;
``notify`` reads ``slots`` models and booking codes, never its views, and never
imports ``jobs`` or the app factory (the relay kick is registered at app start).
"""
