"""Census microdata (ACS PUMS) -> weighted samples of real people.

Python API (imported from the modules, so `import persona_gen.census` stays light):

- `persona_gen.census.sample.sample_people(sources, n, seed, layout="auto", states=(),
  min_age=18, max_age=None, stratify=()) -> pyarrow.Table`: one row per persona, columns
  persona_id, source, record_id, pwgtp and every CENSUS_ATTRIBUTES / CENSUS_EXTRAS name;
  schema metadata b"persona_gen" (`read_metadata`) says what is missing and how it was drawn.
- `persona_gen.census.fidelity.fidelity_report(sources, sample_table) -> FidelityReport`:
  total-variation distance per attribute against the weighted population.
- `persona_gen.census.download.download(year, period, states, dest)`: the Bureau's archives.

Modules: layouts (header -> layout), read (streaming CSV / zip), codebook (+ data/, built
by build_codebook from the Bureau's PUMS data dictionaries), attributes_map (variables -> persona attributes),
universe (filters, weights, income), housing (household facts joined on SERIALNO),
sample, fidelity, charts, download.
"""
