"""Network building blocks shared by classifiers and (later) generators."""
