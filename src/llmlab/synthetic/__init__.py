"""Synthetic stand-ins for the two raw datasets, in their exact real schemas (demo preset, tests).

One module per dataset, so a stage that needs one generator loads only its code and phrases:

- `llmlab.synthetic.imdb`: `generate_imdb(rows, seed)`, IMDB reviews (recipe in its doc).
- `llmlab.synthetic.saiga`: `generate_saiga(rows, seed)`, saiga chat dialogues; the dialogue
  text is written by `llmlab.synthetic.saiga_dialogue`.
- `llmlab.synthetic.common`: what both use (seeded generators, the phrase-bank loader).

The phrase banks are package data, `phrases/imdb.json` and `phrases/saiga.json`.

Both generators are pure functions of `(rows, seed)`: every random choice comes from a
`numpy.random.Generator(PCG64(seed))` (row-level draws, vectorised) and a `random.Random`
seeded from it (word-level choices, which are faster in plain Python). No global state is
touched, so the same arguments give the same frame, and `llmlab.io.write_parquet` then gives
the same bytes (with the same library versions).

Import the dataset module you need (`from llmlab.synthetic.imdb import generate_imdb`). This
package re-exports nothing: a stage's code dependencies are its imports (llmlab.stages), so
the IMDB download must not even name the saiga generator.
"""
