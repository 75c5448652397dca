"""The live traffic page (/admin/live/): each finished proxy request, as it happens.

- `events.py`: what a watcher is told of a request (counts, names and timings; never a
  prompt, a response or a key), and the filters a watcher asks for.
- `feed.py`: the process's publisher, called from routing/proxy/finished.py. While nobody
  watches it costs a flag test; while someone does, requests are batched off the response
  path into the channel layer's group, which every worker and replica shares.
- `consumers.py`: the Server-Sent Events stream (a Channels AsyncHttpConsumer, routed in
  gateway_project/asgi.py), for staff with `routing.view_live_traffic`.
- `views.py`: the admin page and its script (routing/static/routing/live_traffic.js).
"""
