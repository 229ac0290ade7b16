"""Wire formats: IPv4, ICMP, TCP and its options. Parse and build are symmetric; a malformed
packet raises `stack.errors.ParseError` with a short reason the host counts as a drop."""
