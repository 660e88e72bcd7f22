npm run build >/dev/null
uptime
for v in "" "--contended 1" "--workers" "--workers --flooder-nice 19"; do
  echo "== $v"; node bench/fairness.mjs --runs 3 --samples 400 $v 2>/tmp/err | node -e 'const r=JSON.parse(require("fs").readFileSync(0));console.log(["b_alone_p50_ms","b_alone_p99_ms","b_cpu_floor_p50_ms","b_cpu_floor_p99_ms","b_flooded_p50_ms","b_flooded_p99_ms","flood_rps"].map(k=>k.replace("b_","").replace("_ms","")+"="+r[k]).join(" "))' || tail -5 /tmp/err
done
uptime
