// Antri service worker: keeps every ticket page and QR image the resident has opened
// readable without a network (network first, the saved copy when offline).
const CACHE = "antri-tickets-v1";
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  const wanted = event.request.method === "GET" && url.pathname.startsWith("/tickets/")
    && !url.pathname.endsWith(".pdf") && !url.pathname.endsWith(".ics")
    && !url.pathname.startsWith("/tickets/lookup");
  if (!wanted) return;
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(url.origin + url.pathname, copy));
        }
        return response;
      })
      .catch(() => caches.match(url.origin + url.pathname))
  );
});
