"""A client's hand-off: a private folder of session pages, their audio, transcripts and
chapters, and a podcast feed (`guided-audio share`)."""
