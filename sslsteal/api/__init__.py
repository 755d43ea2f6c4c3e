"""The victim as an HTTP embedding API (`sslsteal serve`): API keys and the Ray Serve application in front of the
shared victim actor. The wire format is `victim.codec`; the attacker's client, `attacks.endpoint`."""
