"""Wire formats: IPv4, IPv6 (and the extension headers a destination walks), ICMP, ICMPv6, TCP and
its options. Parse and build are symmetric; a malformed packet raises `stack.errors.ParseError`
with a short reason the host counts as a drop."""
