"""Pipeline layer: the stage table, settings of a run, the results store, the stage computations,
sharded runs (serial or Dask), cost estimates and throughput benchmarks."""
