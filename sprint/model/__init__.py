"""The model: the sublayer view of a Hugging Face decoder (the one adapter table of model families lives in
``modeling_sprint``), loading, the pruned-checkpoint format and the modeling code it carries, the embedded SmolLM2,
and tiny random-weight models for tests.  Imports nothing else of the package but its base modules."""
