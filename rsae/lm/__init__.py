"""The language-model side: the offline model, harvesting residual streams, downstream (spliced CE, probing) metrics."""
