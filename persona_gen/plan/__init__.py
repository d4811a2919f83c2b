"""The work plan: which prompts each persona answers, as stable pair ids."""
