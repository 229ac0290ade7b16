"""TCP: the connection state machine (RFC 9293) and the parts it is built from."""
