"""Personas: census demographics + procedural traits + model-written attributes."""
