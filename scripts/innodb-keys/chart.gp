# Draws results.png from results.dat (written by bench.py): one panel per measurement, one bar per key.
# Usage: gnuplot -e "datafile='results.dat'; outfile='results.png'" chart.gp
set terminal pngcairo size 1200,800 font "sans,10"
set output outfile
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.8
set grid ytics
set key off
set xtics scale 0
set yrange [0:*]
set multiplot layout 2,3 title "Same rows, four InnoDB primary keys (higher is better only for throughput)"
set title "Insert throughput (rows/s)"
plot datafile using 2:xtic(1) linecolor rgb "#4e79a7"
set title "Server CPU seconds for the load"
plot datafile using 7:xtic(1) linecolor rgb "#9c755f"
set title "Table size, all indexes (MiB)"
plot datafile using 3:xtic(1) linecolor rgb "#f28e2b"
set title "MiB written to data files during the load"
plot datafile using 8:xtic(1) linecolor rgb "#e15759"
set title "Buffer-pool misses during load (thousands)"
plot datafile using 5:xtic(1) linecolor rgb "#76b7b2"
set title "Merchant range scan: disk page reads per query (cold)"
plot datafile using 6:xtic(1) linecolor rgb "#59a14f"
unset multiplot
