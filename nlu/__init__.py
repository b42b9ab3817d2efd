"""Understanding complaint texts: taxonomy, entities, classifiers."""
