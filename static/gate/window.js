// The offline gate's check-in window, as slots.window.window_refusal (issue 15 part 2):
// a booking is admitted from its arrival time (the start of its arrival wave) less the
// early minutes until its slot's end plus the late minutes. After the window it is
// too_late on any later day (issue 14 item 6a); before it, not_today on an earlier
// local day, else too_early.

// Return { reason, opens, closes }: reason "" inside the window, else too_late,
// not_today or too_early; opens and closes are Dates. Arguments: slot start, slot end
// and arrival (Dates), now (a Date), early and late (minutes), dayOf (a Date's local
// day, as text, in the market point's zone).
export function windowRefusal(start, end, arrive, now, early, late, dayOf) {
  const opens = new Date(arrive.getTime() - early * 60000);
  const closes = new Date(end.getTime() + late * 60000);
  let reason = "";
  if (now > closes) reason = "too_late";
  else if (now < opens) reason = dayOf(start) !== dayOf(now) ? "not_today" : "too_early";
  return { reason: reason, opens: opens, closes: closes };
}

// The arrival time the gate knows for a booking: the snapshot's arrive_at, else (a
// booking made after the last sync, known only by its ticket, which states the slot
// and not the wave) the slot's start.
export function arrivalOf(booking, start) {
  return booking && booking.arrive_at ? new Date(booking.arrive_at) : start;
}
