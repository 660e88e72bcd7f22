#!/bin/sh
# Which in-sandbox tools need AF_UNIX (issue 9, unix sockets). Runs INSIDE the sandbox image; prints
# one "tool: ok|FAIL detail" line per probe (bench/probes/unix-sockets-run.sh runs it under both profiles).
cd /tmp
echo "installed: $(for t in tmux screen gpg-agent ssh-agent ssh sshd python3 node git; do command -v $t >/dev/null && printf '%s ' $t; done)"
probe() { name=$1; shift; out=$("$@" 2>&1); rc=$?; if [ $rc = 0 ]; then echo "$name: ok"; else echo "$name: FAIL rc=$rc $(echo "$out" | tail -1 | cut -c1-160)"; fi; }
probe py-subprocess python3 -c 'import subprocess;subprocess.run(["true"],check=True)'
probe py-mp-pool-fork python3 -c '
import multiprocessing as mp
with mp.get_context("fork").Pool(2) as p: assert p.map(abs,[-1,-2])==[1,2]'
probe py-mp-queue python3 -c '
import multiprocessing as mp
q=mp.Queue();p=mp.Process(target=q.put,args=(1,));p.start();assert q.get()==1;p.join()'
probe py-mp-forkserver python3 -c '
import multiprocessing as mp
if __name__=="__main__":
  with mp.get_context("forkserver").Pool(2) as p: assert p.map(abs,[-1])==[1]'
probe py-mp-spawn python3 -c '
import multiprocessing as mp
if __name__=="__main__":
  with mp.get_context("spawn").Pool(2) as p: assert p.map(abs,[-1])==[1]'
probe py-mp-manager python3 -c '
import multiprocessing as mp
if __name__=="__main__":
  m=mp.Manager();d=m.dict();d[1]=2;assert d[1]==2;m.shutdown()'
probe py-asyncio python3 -c 'import asyncio;asyncio.run(asyncio.sleep(0))'
probe node-fork-ipc node -e 'const c=require("child_process").fork("-e",[],{execArgv:["-e","process.send(1)"]});c.on("message",()=>process.exit(0))'
probe node-pipe-server node -e 'const s=require("net").createServer().listen("/tmp/lsp.sock",()=>{s.close();process.exit(0)}).on("error",e=>{console.log(e.code);process.exit(1)})'
probe git-credential-cache sh -c 'printf "protocol=https\nhost=x\nusername=u\npassword=p\n\n" | git -c credential.helper="cache --socket /tmp/gcc/sock" credential approve && printf "protocol=https\nhost=x\n\n" | git -c credential.helper="cache --socket /tmp/gcc/sock" credential fill | grep -q password=p'
probe ssh-agent sh -c 'ssh-agent -a /tmp/sa.sock -D & sleep 0.5; SSH_AUTH_SOCK=/tmp/sa.sock ssh-add -l; r=$?; kill $! 2>/dev/null; [ $r = 1 ]'
command -v tmux >/dev/null && probe tmux sh -c 'tmux -S /tmp/tm.sock new-session -d "sleep 5" && tmux -S /tmp/tm.sock ls && tmux -S /tmp/tm.sock kill-server'
command -v gpg-agent >/dev/null && probe gpg-agent sh -c 'export GNUPGHOME=/tmp/gnupg; mkdir -p -m700 $GNUPGHOME; gpg-connect-agent /bye'
exit 0
