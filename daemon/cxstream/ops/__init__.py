"""Operations commands: a running daemon's journal, read and acted on from a shell."""
