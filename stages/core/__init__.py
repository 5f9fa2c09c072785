"""The floor every layer stands on: content addressing, build paths, the ledger, media, fonts,
prompts, text and errors. Imported by stages, backends and flows; imports nothing above it."""
