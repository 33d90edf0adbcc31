"""UQABench-style evaluation: the question set (``questions``) and UQABench's scoring (``scoring``)."""
