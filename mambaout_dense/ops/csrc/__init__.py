"""C++ sources of the optional compiled CPU selective scan (see :mod:`.build`)."""
