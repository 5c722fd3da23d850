"""A deterministic simulator of baton: the real runtime, virtual time, seeded faults (issue 14).

    make sim SEED=7              one world, its trace and the oracle's verdict
    make sim RUNS=1000000        a soak over seeds 1.. (SEED=a RUNS=n: seeds a..a+n-1)

`world.World(seed)` builds a bucket (`s3.MemoryS3`), the Lambda service
(`lam.SimLambda`), containers made by `Container.create` with the simulator's
clock, executors and processor, and a fault plan (`faults.FAULTS`); it runs the
real `worker.dispatch.dispatch` for every start, leg and sweep, one invocation
thread at a time (`scheduler.Scheduler`), until every run has ended, and then
`oracle.judge` checks it. `soak` runs many seeds on a process pool.
"""
