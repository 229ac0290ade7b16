"""Link impairments: the profile (lab.model.impairment), netem, and the NFQUEUE emulator.

`backend.apply` picks netem where the kernel has sch_netem and the emulator otherwise, and says
which one it used; nothing runs unimpaired silently.
"""

from lab.model.impairment import Impairment

__all__ = ["Impairment"]
