"""Direct Principle Feedback: original, critique, revision, verification."""
