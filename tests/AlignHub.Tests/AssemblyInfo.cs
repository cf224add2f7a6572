using Xunit;

// Integration tests start real AlignHub processes that train on 2 cores: one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
