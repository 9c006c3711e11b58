"""Imported first by the workers' forkserver (runners.queue.local.start_forkserver), before the modules it preloads.

It pauses the cyclic garbage collector for those imports and for the forks that follow, as Python's gc
documentation advises for a process that forks without exec: disable early in the parent, freeze before the fork,
enable in the child (runners.queue.local._worker does the last two). The imports make ~600k objects that live as
long as the process; a collector walking them as they are made costs ~15% of the imports' CPU (1.3-1.7 s of ~9 s
here), and the forkserver itself makes nothing else.
"""

import gc

gc.disable()
