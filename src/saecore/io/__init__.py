"""Reading and writing SAEs: the SAELens v6 folder format, atomic writes, the Hub."""
