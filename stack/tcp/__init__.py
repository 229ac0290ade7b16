"""TCP: the connection state machine (RFC 9293) and the parts it is built from.

connection.py   TcpConnection: the three ways in (on_segment, on_timer, application calls) and
                the steps of RFC 9293 3.10.7.4 in order; public calls the socket layer uses
transitions.py  the state machine as data, (state, event) -> state: RFC 9293 figure 5 plus
                RST, ABORT, user and keepalive timeouts; an unknown pair raises
tcb.py          the shared variables (RFC 9293 3.3.1), the one state change, the one way out (_emit)
handshake.py    active and passive OPEN, SYN options, SYN_SENT, completing SYN_RECEIVED
receiver.py     acceptability, PAWS, trimming, reassembly, D-SACK, receive window, delayed ACK, FIN
sender.py       send buffer, _output (Nagle, sender SWS), ACK of new data, window update, persist
recovery.py     dupacks, limited transmit, NewReno and SACK recovery, RTO response (with congestion/)
timers.py       six named deadlines, earliest(), one firing order
listener.py     a listening socket's half-open and accept queues (the connection sees a ListenerLink)
congestion/     NewReno and CUBIC behind one small interface; reassembly.py, scoreboard.py (SACK),
                rtt.py (RFC 6298), isn.py (RFC 6528), state.py (the eleven states)
"""
