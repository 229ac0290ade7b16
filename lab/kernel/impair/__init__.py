"""Link impairments in the kernel: the netem path and the user-space NFQUEUE emulator (the
profile they realise is lab.model.impairment).

`backend.apply` picks netem where the kernel has sch_netem and the emulator otherwise, and says
which one it used; nothing runs unimpaired silently.
"""

from lab.model.impairment import Impairment

__all__ = ["Impairment"]
