"""Market points, slots, capacity and bookings: the resident's side of Antri.

The blueprint ``bp`` lives in ``slots.views``: importing a service module of this
package (as ``notify`` and ``checkin`` do) does not import the views.
"""
