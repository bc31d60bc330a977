"""Pictures in and out: infotext (A1111's parameters text), metadata in image files, saving under A1111's folder
and file names, grids, latent previews and VAE output conversion. One module per job; import the module you need
(``preview`` pulls in torch, the others do not)."""
