"""Components, incidents, updates, postmortems and maintenance of the public status page."""
