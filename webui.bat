@echo off
rem Paragoger SD launcher for Windows.
rem   webui.bat           create venv\ on first run, install torch and requirements.txt, start the app
rem   webui.bat --test    the same set-up, then run the whole test suite
rem Settings (also read from webui-user.bat when present, as in AUTOMATIC1111):
rem   COMMANDLINE_ARGS, TORCH_COMMAND, PYTHON, VENV_DIR
setlocal
cd /d "%~dp0"
if exist webui-user.bat call webui-user.bat
if not defined PYTHON set "PYTHON=python"
if not defined VENV_DIR set "VENV_DIR=%~dp0venv"
if not defined TORCH_COMMAND set "TORCH_COMMAND=pip install torch==2.14.1 torchvision==0.29.1 --extra-index-url https://download.pytorch.org/whl/cu128"

if not exist "%VENV_DIR%\Scripts\python.exe" (
    echo Creating a Python environment in %VENV_DIR% ^(first run only^)...
    "%PYTHON%" -m venv "%VENV_DIR%"
    if errorlevel 1 goto :error
)
set "PY=%VENV_DIR%\Scripts\python.exe"

"%PY%" -c "import torch, torchvision" >nul 2>&1
if errorlevel 1 (
    echo Installing torch: %TORCH_COMMAND%
    "%PY%" -m %TORCH_COMMAND%
    if errorlevel 1 goto :error
)

rem Reinstall requirements only when requirements.txt changed since the last successful install.
set "STAMP=%VENV_DIR%\.requirements.sha256"
for /f "skip=1 tokens=* delims=" %%h in ('certutil -hashfile requirements.txt SHA256') do if not defined WANTED set "WANTED=%%h"
set "HAVE="
if exist "%STAMP%" set /p HAVE=<"%STAMP%"
if not "%HAVE%"=="%WANTED%" (
    echo Installing requirements.txt...
    "%PY%" -m pip install --disable-pip-version-check -r requirements.txt
    if errorlevel 1 goto :error
    >"%STAMP%" echo %WANTED%
)

if not defined HF_HUB_OFFLINE set "HF_HUB_OFFLINE=1"
set "GRADIO_ANALYTICS_ENABLED=False"
if "%~1"=="--test" (
    shift
    "%PY%" -m pytest tests %1 %2 %3 %4 %5 %6 %7 %8 %9
    exit /b %errorlevel%
)
"%PY%" app.py %*
exit /b %errorlevel%

:error
echo.
echo Setting up Paragoger SD failed (see the messages above).
pause
exit /b 1
