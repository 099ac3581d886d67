"""gunicorn reads this file from the directory it starts in.

Keep idle connections open longer than clients keep them in their pools (httpx, which
huggingface_hub uses, drops them after 5 s; requests after none): otherwise the server closes a
connection at the moment a client sends its next request on it, and under load clients fail with
"Server disconnected without sending a response" (bench/hub_load.py, 50 concurrent
snapshot_download, gunicorn's default of 2 s)."""

keepalive = 75
