@echo off
rem Paragoger SD launcher for Windows.
rem   webui.bat           create venv\ on first run, install torch and requirements.txt, start the app
rem   webui.bat --test    the same set-up plus requirements-test.txt, then run the whole test suite
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

call :install_requirements requirements.txt "%VENV_DIR%\.requirements.sha256"
if errorlevel 1 goto :error

if not defined HF_HUB_OFFLINE set "HF_HUB_OFFLINE=1"
set "GRADIO_ANALYTICS_ENABLED=False"
if "%~1"=="--test" goto :test
"%PY%" app.py %*
exit /b %errorlevel%

rem Outside a parenthesised block, so that shift and %errorlevel% act when their line runs.
:test
call :install_requirements requirements-test.txt "%VENV_DIR%\.requirements-test.sha256"
if errorlevel 1 goto :error
shift
"%PY%" -m pytest tests %1 %2 %3 %4 %5 %6 %7 %8 %9
exit /b %errorlevel%

rem Install a requirements file (first argument) only when it changed since its last successful install (its
rem stamp file: second argument).
:install_requirements
set "WANTED="
for /f "skip=1 tokens=* delims=" %%h in ('certutil -hashfile "%~1" SHA256') do if not defined WANTED set "WANTED=%%h"
set "HAVE="
if exist "%~2" set /p HAVE=<"%~2"
if "%HAVE%"=="%WANTED%" exit /b 0
echo Installing %~1...
"%PY%" -m pip install --disable-pip-version-check -r "%~1"
if errorlevel 1 exit /b 1
>"%~2" echo %WANTED%
exit /b 0

:error
echo.
echo Setting up Paragoger SD failed (see the messages above).
pause
exit /b 1
