"""Value-laden prompts: load, filter, topic-assign, split."""
