"""The victim as an HTTP embedding API (`sslsteal serve`): API keys, the request codecs, the Ray Serve application in
front of the shared victim actor, and the client attacks use against any such endpoint."""
