"""Beyond one machine: joining Ray and checking a trial's request against the live nodes
(:mod:`.resources`), and checking a ``ray up`` cluster file offline (:mod:`.cluster_file`)."""
