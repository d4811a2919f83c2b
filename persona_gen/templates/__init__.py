"""Default prompt templates, one Jinja file per model stage (see persona_gen.pipeline.template).

Copy one, edit it, and point the stage at it: `stages.critique.template: my_critique.jinja`.
"""
