"""Medical image captioning with retrieval: the pieces the page and the commands share."""
