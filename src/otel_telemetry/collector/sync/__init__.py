"""``sync:``: ship every committed row of the local store to a central libSQL server."""
