"""Every sentence a person reads, keyed by a stable id, so a translation can replace the English later.

Code raises ``UserError("checkpoint_corrupt", name=...)``; the UI and the API render it with ``render``.
A catalogue for another language is a dict with the same keys (see ``load_catalogue``).
"""
from __future__ import annotations

import json
from pathlib import Path

ENGLISH: dict[str, str] = {
    # models
    "no_checkpoint": "No checkpoint found. Put a .safetensors or .ckpt file into {folder} and press refresh, "
                     "or create a tiny test model (its images are noise).",
    "checkpoint_not_found": "Checkpoint '{name}' is not in the checkpoint list. Press refresh, or check its name.",
    "checkpoint_corrupt": "Could not read checkpoint '{name}': {reason}. The file may be truncated or not a model; "
                          "the previous model stays loaded.",
    "checkpoint_unknown_architecture": "Checkpoint '{name}' is not a Stable Diffusion model this app knows "
                                       "(SD 1.x, SD 2.x, SDXL).",
    "pickle_refused": "Checkpoint '{name}' was refused: its pickle asks to run '{what}', which a model file never "
                      "needs. Only load .ckpt files you trust; prefer .safetensors.",
    "vae_not_found": "VAE '{name}' was not found.",
    # requests
    "size_not_multiple_of_8": "Width and height must be multiples of 8 (got {width}x{height}).",
    "size_out_of_range": "Width and height must be between {low} and {high} pixels (got {width}x{height}).",
    "steps_out_of_range": "Steps must be between 1 and {high} (got {steps}).",
    "batch_out_of_range": "Batch size must be 1 to {high_size} and batch count 1 to {high_count}.",
    "cfg_out_of_range": "CFG scale must be between 0 and 100 (got {cfg}).",
    "number_invalid": "'{field}' must be a finite number (got {value}).",
    "number_not_whole": "'{field}' must be a whole number (got {value}).",
    "number_out_of_range": "'{field}' must be between {low} and {high} (got {value}).",
    "limit_prompt_characters": "The {field} has {count} characters, more than {limit} tokens can take (setting "
                               "'{setting}' in Settings > Limits). Shorten it.",
    "limit_prompt_tokens": "The {field} is {count} tokens long; at most {limit} are allowed (setting '{setting}' "
                           "in Settings > Limits).",
    "limit_steps": "{field} asks for {count} steps; at most {limit} are allowed (setting '{setting}' in Settings > "
                   "Limits).",
    "limit_images": "{count} pictures asked for (batch size x batch count); at most {limit} are allowed in one "
                    "request (setting '{setting}' in Settings > Limits).",
    "limit_images_plan": "{script} would make {count} pictures; at most {limit} are allowed in one request "
                         "(setting '{setting}' in Settings > Limits).",
    "limit_pixels": "A {width}x{height} picture is {pixels} pixels; at most {limit} are allowed (setting "
                    "'{setting}' in Settings > Limits).",
    "limit_pixels_hires": "The Hires. fix would make a {width}x{height} picture, {pixels} pixels; at most {limit} "
                          "are allowed (setting '{setting}' in Settings > Limits).",
    "limit_pixels_upscale": "Upscaling {in_width}x{in_height} would make a {width}x{height} picture, {pixels} "
                            "pixels; at most {limit} are allowed (setting '{setting}' in Settings > Limits).",
    "cpu_precision_fallback": "--precision {precision} was asked for, but this CPU does not compute {precision} "
                              "natively, so it would be many times slower: the models run in fp32 instead. Start "
                              "with --force-precision to use {precision} anyway.",
    "checkpoint_fallback": "The chosen checkpoint '{saved}' is not in the model folders; '{loaded}' is used "
                           "instead. Your choice is kept and used again once the file is back (press refresh).",
    "unknown_sampler": "Unknown sampler '{name}'. Known samplers: {known}.",
    "unknown_schedule": "Unknown schedule type '{name}'. Known schedule types: {known}.",
    "extension_tab_failed": "The tab of extension '{name}' could not be built: {reason}. The extension was "
                            "switched off; see the Extensions tab.",
    "unknown_upscaler": "Unknown upscaler '{name}'. Known upscalers: {known}.",
    "queue_full": "The queue is full ({size} jobs waiting). Try again in a moment.",
    "out_of_memory_sampling": "Out of memory while sampling a {width}x{height} picture (batch of {batch}) on "
                              "{device}, even after unloading the models no job was using and trying once more. "
                              "Try a smaller size or batch size, or close other programs that use the GPU.",
    "out_of_memory_decoding": "Out of memory while decoding a {width}x{height} picture (batch of {batch}) on "
                              "{device}, even in tiles after unloading the models no job was using. Try a smaller "
                              "size or batch size, or close other programs that use the GPU.",
    "out_of_memory_upscaling": "Out of memory while upscaling a {width}x{height} picture on {device}, even in "
                               "smaller tiles after unloading the models no job was using. Try a smaller tile size "
                               "(Settings, Upscaling) or a smaller picture.",
    "memory_totals_ram": "Loaded models: {count}, holding {used} of RAM (budget {budget}).",
    "memory_totals_vram": "On the GPU they hold {used} (budget {budget}).",
    "model_in_use": "'{name}' is in use by a running job; it can be unloaded when the job ends.",
    "model_not_loaded": "No {kind} '{name}' is loaded.",
    "out_of_memory": "The GPU ran out of memory. Try a smaller size or batch, or close other programs that use the GPU.",
    "unknown_option": "Unknown setting '{key}'.",
    "bad_option_value": "Setting '{key}' cannot take the value {value!r}: {reason}.",
    "job_not_found": "No job with id '{job_id}'.",
    # progress
    "progress_queued": "In queue: position {position}",
    "progress_running_other": "now running: {kind}, step {step}/{total}",
    "progress_step": "Step {step}/{total}",
    "progress_eta": "ETA {eta}",
    "progress_loading": "Loading {name}…",
    "progress_done": "Done",
    "progress_interrupted": "Interrupted",
    # models (model_manager)
    "checkpoint_incomplete": "Checkpoint '{name}' could not be loaded: its {part} weights do not fit the model "
                             "({detail}). The file may be damaged or of an unsupported kind.",
    "checkpoint_missing_vae": "Checkpoint '{name}' has no VAE weights. Choose a VAE for it, or put "
                              "'{stem}.vae.safetensors' beside it.",
    "vae_unknown_architecture": "'{name}' is not a VAE this app can read.",
    "hash_lookup_failed": "Could not compute the hash of '{name}': {reason}.",
    "bad_image": "The {field} could not be read: {reason}.",
    "image_too_large": "The {field} is too large (limit {limit}).",
    "auth_required": "Authentication required.",
    "outpaint_out_of_range": "Outpainting extends each side by 0 to {high} pixels, filled with one of: {fills}.",
    "batch_folder_missing": "The input folder {folder} does not exist.",
    "batch_done": "Batch: {written} pictures written to {folder}; {skipped} skipped.",
    "init_image_missing": "img2img needs a picture to start from.",
    "denoising_out_of_range": "Denoising strength must be between 0 and 1 (got {value}).",
    "resize_mode_unknown": "Unknown resize mode {value} (0 just resize, 1 crop and resize, 2 resize and fill, "
                           "3 latent upscale).",
    "inpainting_fill_unknown": "Unknown masked content {value} (0 fill, 1 original, 2 latent noise, "
                               "3 latent nothing).",
    "mask_size_mismatch": "The mask ({mask}) must be the same size as the picture ({image}).",
    "unknown_style": "Unknown style: {name}. Styles are listed at /sdapi/v1/prompt-styles.",
    "style_needs_name": "Give the style a name.",
    "download_failed": "Could not download {url}: {reason}.",
    "download_checksum": "The downloaded {name} does not have the expected sha256; it was deleted. Try again.",
    "schedule_not_supported": "Sampler '{sampler}' cannot use the schedule type '{schedule}'. "
                              "It supports: {supported}.",
    "sampler_needs_package": "Sampler '{name}' needs the Python package '{package}', which is not installed. "
                             "Install it (pip install {package}) or pick another sampler.",
    "sampler_config_invalid": "Sampler '{sampler}' with schedule type '{schedule}' does not work with this "
                              "model's scheduler settings: {reason}.",
    "unknown_rng_source": "Random number source '{name}' is not available. Use one of: {known}.",
    "rng_gpu_fallback": "No CUDA GPU: the noise was drawn on the CPU, so images differ from A1111's default GPU "
                        "noise for the same seed (they match A1111 with RNG set to CPU, and ComfyUI).",
    "lora_not_found": "LoRA '{name}' was not found. Put it into the Lora folder and press refresh, or check its "
                      "name.",
    "lora_bad_weight": "The LoRA tag <{tag}> has a weight that is not a number.",
    "lora_unreadable": "Could not read LoRA '{name}': {reason}. The file may be truncated or not a LoRA.",
    "lora_wrong_architecture": "LoRA '{name}' is made for {lora_family}, but the loaded checkpoint is "
                               "{model_family}. Use it with a {lora_family} checkpoint.",
    "lora_nothing_matched": "LoRA '{name}' does not fit the loaded {model_family} checkpoint: none of its {count} "
                            "layers could be applied. It may be made for another model, or be of a kind this app "
                            "cannot apply.",
    "network_pickle_refused": "'{name}' was refused: its pickle asks to run '{what}', which a LoRA or embedding "
                              "file never needs. Only use .pt/.ckpt files you trust; prefer .safetensors.",
    "embedding_too_long": "Embedding '{name}' has {count} vectors; at most {limit} fit in one prompt chunk.",
    "job_cancelled": "Job {job_id} was cancelled before it ran.",
    "batch_folder_outside": "The batch {what} folder '{folder}' is outside {root}. While the app is shared on the "
                            "network, batch folders must be inside its data folder (relative names start there).",
    "path_outside_folder": "{key} = '{value}' points outside {folder}; folders given in requests must stay "
                           "inside the app's folders.",
    "request_too_large": "The request body is too large ({size} bytes; the limit is {limit} bytes).",
    "depth_estimator_missing": "Checkpoint '{name}' is a depth model: it needs the depth of the picture. Upload a "
                               "depth map, or put a depth estimator (a transformers DPT/MiDaS folder such as "
                               "dpt-hybrid-midas, with its preprocessor_config.json) into {folder}.",
    "depth_estimator_unreadable": "Could not load the depth estimator '{name}': {reason}. It must be a "
                                  "transformers depth-estimation folder (config.json, weights, "
                                  "preprocessor_config.json).",
    "checkpoint_needs_picture": "Checkpoint '{name}' changes a picture (depth or instruct-pix2pix model); use it "
                                "in img2img with a picture to start from.",
    "image_cfg_out_of_range": "Image CFG scale must be between 0 and 100 (got {value}).",
    # Hires. fix (paragoger.core.hires)
    "hires_size_out_of_range": "The Hires. fix size must be between {low} and {high} pixels (got "
                               "{width}x{height}). Lower Upscale by, or the Resize width/height to.",
    "hires_scale_out_of_range": "Hires. fix Upscale by must be more than 0 and at most {high} (got {value}).",
    "hires_resize_negative": "Hires. fix Resize width/height to must be 0 (from Upscale by) or more (got "
                             "{width}x{height}).",
    "hires_steps_out_of_range": "Hires steps must be between 0 (the same as Sampling steps) and {high} "
                                "(got {steps}).",
    # upscalers and the Extras tab (paragoger.upscale, paragoger.core.extras)
    "upscaler_unreadable": "Could not read upscaler model '{name}': {reason}. The file may be truncated or not a "
                           "model.",
    "upscaler_pickle_refused": "Upscaler model '{name}' was refused: its pickle asks to run '{what}', which a model "
                               "file never needs. Only use .pth files you trust; prefer .safetensors.",
    "upscaler_unknown_architecture": "'{name}' is not an upscaler model this app can read: it matches none of the "
                                     "architectures spandrel knows (ESRGAN, Real-ESRGAN, SwinIR, DAT, HAT, ...).",
    "upscaler_not_for_pictures": "'{name}' is a {architecture} model for {purpose}, not an upscaler.",
    "upscale_too_large": "Upscaling {width}x{height} with '{name}' would make a {out_width}x{out_height} picture; "
                         "the limit is {limit} pixels. Use a smaller picture or scale.",
    "extras_scale_out_of_range": "Upscale by must be more than 0 and at most {high} (got {value}).",
    "extras_size_out_of_range": "Upscale to width and height must be 1 to {high} pixels (got {width}x{height}).",
    "extras_resize_mode_unknown": "Unknown resize mode {value} (0 scale by, 1 scale to).",
    "extras_visibility_out_of_range": "Upscaler 2 visibility must be between 0 and 1 (got {value}).",
    "extras_no_image": "Choose a picture to upscale.",
    "extras_face_restoration_unavailable": "Face restoration (GFPGAN, CodeFormer) is not available in this app; "
                                           "set gfpgan_visibility and codeformer_visibility to 0.",
    "extras_batch_done": "{written} pictures written to {folder}; {skipped} skipped.",
    # image to text (paragoger.caption)
    "unknown_captioner": "Unknown captioner '{name}'. Known captioners: {known}.",
    "blip_model_missing": "Image to text needs a BLIP captioning model. Put a Hugging Face BLIP captioning folder "
                          "(config.json, model.safetensors, preprocessor and tokenizer files, for example a copy "
                          "of Salesforce/blip-image-captioning-base) into {folder}, as "
                          "{folder}/blip-image-captioning-base. For flavours, add a CLIP folder (such as "
                          "openai/clip-vit-large-patch14) to the CLIP folder beside it.",
    "tagger_model_missing": "DeepBooru tags need a WD tagger model. Put a timm tagger folder (config.json, "
                            "model.safetensors and selected_tags.csv, for example a copy of "
                            "SmilingWolf/wd-vit-tagger-v3) into {folder}, as {folder}/wd-vit-tagger-v3.",
    "caption_model_unreadable": "Could not load the {kind} model in {folder}: {reason}. It must be a complete "
                                "model folder as downloaded (config.json, weights and the other files).",
    "tagger_tags_unreadable": "Could not read the tag list {path}: {reason}. A WD tagger needs its "
                              "selected_tags.csv (columns tag_id, name, category, count).",
    "tagger_tags_mismatch": "The tagger in {folder} predicts {outputs} tags but its selected_tags.csv lists "
                            "{tags}; the two files do not belong together.",
    "caption_image_missing": "Choose a picture to describe.",
    # scripts (paragoger.ext.scripts)
    "script_not_found": "Script '{name}' was not found. Scripts: {known}.",
    "alwayson_script_not_found": "Always-on script '{name}' was not found. Always-on scripts: {known}.",
    "script_not_selectable": "Script '{name}' is always on; pass its arguments in alwayson_scripts.",
    "script_arg_unknown": "Script '{name}' has no argument '{arg}'. Its arguments: {known}.",
    "script_args_too_many": "Script '{name}' takes {count} arguments ({known}), got {got}.",
    "script_args_invalid": "Arguments for script '{name}' must be a list or an object by name.",
    # installing, updating and restarting (paragoger.ext.install, paragoger.lifecycle)
    "extension_access_refused": "Installing and updating extensions and restarting are switched off because the "
                                "app {where}, so others could use them to run code on this machine. Start it with "
                                "--enable-insecure-extension-access to allow them anyway.",
    "extension_access_where_host": "listens on {host}",
    "extension_access_where_share": "has a public --share link",
    "extension_url_missing": "Enter the git URL of the extension.",
    "extension_url_refused": "'{url}' is not a git URL this app installs from. Use an http(s)://, git://, "
                             "ssh:// (or user@host:path) or file:// URL.",
    "extension_name_invalid": "'{name}' cannot be an extension folder name: it must not be empty, contain '/', "
                              "'\\' or '..', or start with '.' or '_'.",
    "extension_branch_invalid": "'{branch}' is not a branch name.",
    "extension_exists": "An extension folder named '{name}' already exists ({path}). Give another folder name, or "
                        "update the installed one.",
    "extension_not_found": "No extension named '{name}'.",
    "extension_not_git": "Extension '{name}' is not a git checkout ({path}), so it cannot be updated from here.",
    "extension_installed": "Installed '{name}' ({commit}) into {path}. It becomes active after a restart: press "
                           "Apply and restart.",
    "extension_install_script_failed": "Installed '{name}' into {path}, but its install.py failed (it runs again "
                                       "at the next start):\n{output}",
    "extension_up_to_date": "'{name}' is already up to date ({commit}).",
    "extension_updated": "'{name}' was updated from {old} to {new}. The new version is active after a restart.",
    "extension_has_news": "'{name}': {count} new commit(s) at {remote}.",
    "extension_no_news": "'{name}': up to date.",
    "extension_check_failed": "'{name}': could not check: {reason}",
    "extensions_no_checkouts": "No installed extension is a git checkout, so there is nothing to check.",
    "extensions_switched_off": "No extension loads while the app runs with {flag}.",
    "git_missing": "git is not installed: installing and updating extensions needs the git command.",
    "git_failed": "git {action} failed (exit code {code}): {stderr}",
    "git_timeout": "git {action} took longer than {seconds} s and was stopped. {stderr}",
    "restart_unavailable": "This server cannot restart itself: only the app started with app.py can.",
    "server_restarting": "Restarting: the app starts again with the same command line; the page reloads when it "
                         "is back.",
    "server_stopping": "The app is stopping.",
    "server_restarting_busy": "The app is restarting (or stopping) once the jobs already queued are done; it takes "
                              "no new ones until then.",
    # video generation (core/video.py, video/options.py)
    "video_frames_out_of_range": "A video must have 1 to {high} frames (asked for {frames}). The most is the "
                                 "setting \"Most video frames\".",
    "video_option_invalid": "Video setting '{name}' cannot be {value}: it takes {allowed}.",
    "video_mask_too_short": "The mask video has {mask} frames but the video has {frames}: give a mask for every "
                            "frame.",
    "motion_module_needed": "Text and image to video need a motion module: put one (e.g. mm_sd_v15_v2.ckpt) into "
                            "models/AnimateDiff and press refresh. Video to video also works without one, frame by "
                            "frame.",
    "motion_module_needs_base_checkpoint": "Motion modules work with ordinary checkpoints; '{checkpoint}' is a "
                                           "{variant} checkpoint. Choose another, or use video to video with the "
                                           "motion module set to None (frame by frame).",
    "video_not_base64": "'{field}' is not base64 data of a video file.",
    "video_path_missing": "'{field}': there is no file or folder '{path}' in the data folder.",
    "video_source_missing": "Video to video needs a source video (MP4, WebM, GIF or a folder of frames).",
    # video files (paragoger/video/files.py, video_reader.py)
    "video_format_unknown": "Unknown video format '{format}'. The formats are: {known}.",
    "video_no_formats": "Choose at least one video format ({known}).",
    "video_no_frames": "There are no frames to save as a video.",
    "video_fps_invalid": "The frame rate must be more than 0 frames per second (got {fps}).",
    "video_frame_sizes_differ": "All frames of a video must have the same size: frame {index} is {size}, the first "
                                "is {first}.",
    "video_write_failed": "Writing the {format} video failed: {reason}",
    "video_unreadable": "{name} could not be read as a video: {reason}.",
    "video_folder_empty": "The folder {name} holds no frames (.png, .jpg or .webp files).",
    "video_too_many_frames": "{name} has {count} frames; at most {limit} are allowed.",
    # stable video diffusion (paragoger/video/svd.py, svd_models.py)
    "svd_no_models": "No Stable Video Diffusion model was found. Put the diffusers folder of one (e.g. "
                     "stable-video-diffusion-img2vid-xt, the folder with model_index.json, unet, vae, image_encoder, "
                     "feature_extractor and scheduler in it) into {folders}.",
    "svd_model_not_found": "Stable Video Diffusion model '{name}' was not found. Models: {known}.",
    "svd_not_svd": "'{name}' is not a Stable Video Diffusion model: {reason}.",
    "svd_single_file_unsupported": "'{name}' is a single-file Stable Video Diffusion checkpoint, which cannot be "
                                   "loaded. Use the diffusers folder of the same model instead "
                                   "(stable-video-diffusion-img2vid or -img2vid-xt: model_index.json with the unet, "
                                   "vae, image_encoder, feature_extractor and scheduler folders), put into {folder}.",
    "svd_pickle_weights": "'{name}': the {part} weights are .bin pickles, which are not loaded (a pickle can run "
                          "code). Use the .safetensors files of the same model.",
    "svd_model_unreadable": "Could not load the Stable Video Diffusion model '{name}': {reason}.",
    "svd_no_picture": "Stable Video Diffusion makes a video from a picture: give one.",
    "svd_bad_size": "The video's {field} must be a multiple of {multiple} from {low} to {high}, not {value}.",
    "svd_bad_value": "{field} must be from {low} to {high}, not {value}.",
    "svd_out_of_memory": "Out of memory while making a {width}x{height} video of {batch} frames on {device}, even "
                         "after unloading the models no job was using and trying once more. Try a smaller size, "
                         "fewer frames or a smaller decode chunk size, or close other programs that use the GPU.",
    # motion modules (AnimateDiff: paragoger/video/motion_modules.py, motion_unet.py, motion_lora.py)
    "motion_module_not_found": "Motion module '{name}' was not found. Put motion module files (.ckpt or "
                               ".safetensors, e.g. mm_sd_v15_v2.ckpt) into one of these folders and refresh: "
                               "{folders}.",
    "motion_module_unknown": "'{name}' is not an AnimateDiff motion module this app knows (v1, v2, v3, SDXL beta, "
                             "AnimateLCM): its keys are not a motion module's. Is it a checkpoint or a LoRA?",
    "motion_module_corrupt": "Could not read motion module '{name}': {reason}. The file may be truncated or "
                             "damaged; download it again.",
    "motion_module_wrong_family": "Motion module '{module}' is made for {module_family} checkpoints, but the "
                                  "loaded checkpoint is {checkpoint_family}. Choose another motion module (SD 1.5: "
                                  "mm_sd_v15_v2, v3_sd15_mm, AnimateLCM; SDXL: mm_sdxl_v10_beta) or another "
                                  "checkpoint.",
    "motion_module_does_not_fit": "Motion module '{module}' does not fit the loaded checkpoint: {reason}.",
    "motion_lora_does_not_fit": "Motion LoRA '{name}' does not fit motion module '{module}': {reason}.",
    # video tab (paragoger/ui/tabs/video.py)
    "video_folder_outside": "The folder of frames '{folder}' is outside {root}. While the app is shared on the "
                            "network, folders typed into the page must be inside its data folder (relative names "
                            "start there).",
    # controlnet preprocessors (paragoger/control/preprocessors.py, pictures.py, depth_maps.py, network_annotators.py)
    "control_module_unknown": "Unknown ControlNet preprocessor '{name}'. Known preprocessors: {known}.",
    "control_annotator_missing": "Preprocessor '{module}' needs {file} in {folder}. Put it there, or choose "
                                 "another preprocessor.",
    "control_depth_missing": "Preprocessor '{module}' needs a depth model: sd-webui-controlnet's {file} in "
                             "{folder} (or in a folder inside it, as the extension's annotator/downloads keeps "
                             "it), or a transformers depth model folder (e.g. dpt-hybrid-midas) in "
                             "{depth_folder}. Put one there, or choose another preprocessor.",
    "control_annotator_not_runnable": "Preprocessor '{module}' needs {file} (sd-webui-controlnet keeps it in "
                                      "annotator/downloads/{downloads}; here it goes in {folder}), but this "
                                      "version of Paragoger cannot run it yet, with or without the file. Make the "
                                      "map elsewhere and use it with preprocessor 'none', or choose another "
                                      "preprocessor.",
    "control_image_unreadable": "The ControlNet input picture could not be read: {reason}.",
    "control_resolution_out_of_range": "The preprocessor resolution must be from {low} to {high} pixels, not "
                                       "{value}.",
    "control_resize_mode_unknown": "Unknown ControlNet resize mode '{value}'. Resize modes: {known}.",
    # controlnet api (api/controlnet.py)
    "control_units_invalid": "ControlNet's args must be a list of unit objects (got {kind}).",
    "control_preview_needs_picture": "Upload a control picture to the unit first, then press Preview.",
    "control_detect_no_images": "controlnet/detect needs controlnet_input_images: a list of base64 pictures.",
    # controlnet models (ControlNet / T2I-Adapter files: paragoger/control/model_files.py, convert.py, models.py)
    "control_model_not_found": "ControlNet model '{name}' was not found. Put ControlNet and T2I-Adapter files "
                               "(.safetensors or .pth, e.g. control_v11p_sd15_canny.pth) or diffusers folders into "
                               "one of these folders and refresh: {folders}.",
    "control_model_unknown": "'{name}' is not a ControlNet or T2I-Adapter this app knows (ControlNet 1.0/1.1 and "
                             "SDXL ControlNets, T2I-Adapters): its keys are not a ControlNet's. Is it a checkpoint, "
                             "a LoRA or an annotator's weights?",
    "control_model_corrupt": "Could not read ControlNet model '{name}': {reason}. The file may be truncated or "
                             "damaged; download it again.",
    # controlnet units in the loop (paragoger/control/units.py, guidance.py, core/engine.py)
    "controlnet_unit_not_object": "ControlNet unit {unit} must be an object of unit fields (module, model, "
                                  "weight, image...), not {kind}.",
    "controlnet_unit_bad_value": "ControlNet unit {unit}: {field} cannot be '{value}': {reason}.",
    "controlnet_no_model": "ControlNet unit {unit} is enabled but no ControlNet model is chosen. Choose a model "
                           "(or turn the unit off).",
    "controlnet_no_image": "ControlNet unit {unit} has no picture. Give it one, or use img2img, where a unit "
                           "without a picture takes the picture being changed.",
    "controlnet_wrong_family": "ControlNet unit {unit}: model '{model}' is made for {model_family} checkpoints, but "
                               "the loaded checkpoint is {checkpoint_family}. Choose a {checkpoint_family} "
                               "ControlNet model.",
    "controlnet_adapter_in_video": "ControlNet unit {unit}: T2I-Adapter '{model}' cannot guide a video with a "
                                   "motion module (the motion UNet takes no adapter features). Use a ControlNet "
                                   "model, or turn the unit off.",
    "controlnet_unavailable": "ControlNet units were given, but ControlNet is not available in this app.",
    # controlnet xyz and batch (paragoger/scripts/xyz_controlnet.py, core/batch.py)
    "xyz_controlnet_no_unit": "X/Y/Z plot: a [ControlNet] axis changes the first enabled ControlNet unit, but no "
                              "unit is enabled. Enable a unit (with its model and picture) or choose another axis.",
    "batch_control_folder_no_unit": "A ControlNet input folder was given, but no ControlNet unit is enabled: its "
                                    "pictures go to the first enabled unit. Enable a unit or leave the folder "
                                    "empty.",
    # ip-adapter
    "ip_adapter_no_image_encoder": "IP-Adapter '{name}' needs its CLIP image encoder (CLIP ViT-H/14 for "
                                   "ip-adapter_sd15 and Plus), and none was found. Put the encoder's folder (a "
                                   "transformers CLIPVisionModelWithProjection: config.json and model.safetensors) "
                                   "in one of these folders: {folders}.",
    "ip_adapter_image_encoder_unreadable": "The CLIP image encoder in '{folder}' could not be loaded: {reason}",
    "ip_adapter_unsupported": "'{name}' is an IP-Adapter of a kind this app cannot use yet (only ip-adapter and "
                              "ip-adapter-plus files work).",
    "ip_adapter_in_video": "ControlNet unit {unit}: IP-Adapter '{model}' cannot guide a video with a motion "
                           "module yet. Turn the unit off for videos.",
}


def render(message_id: str, catalogue: dict[str, str] | None = None, /, **params) -> str:
    """The sentence for ``message_id`` in the given catalogue (falling back to English), filled with ``params``."""
    template = (catalogue or {}).get(message_id) or ENGLISH.get(message_id, message_id)
    try:
        return template.format(**params)
    except (KeyError, IndexError):
        return template


def load_catalogue(path: Path) -> dict[str, str]:
    """A translation file: a JSON object from message id (or English label) to translated text."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
