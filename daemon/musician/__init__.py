"""The musician: the model and its state, the conversation, phrases, replies, the performer."""
