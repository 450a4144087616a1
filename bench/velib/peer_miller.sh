#!/bin/sh
# The same aggregate with miller: flatten, keep the latest record per
# station, join the postcode table, sum per postcode.
# usage: peer_miller.sh records.ndjson postcodes.csv
set -eu
mlr --ijsonl --ojsonl \
  put '$mechanical = $num_bikes_available_types[1]["mechanical"];
       $ebike = $num_bikes_available_types[2]["ebike"]' \
  then cut -f stationCode,num_bikes_available,mechanical,ebike \
  then tail -n 1 -g stationCode \
  then join --prepipe cat --icsv -j stationCode -f "$2" \
  then stats1 -a sum -f num_bikes_available,mechanical,ebike -g postcode \
  then rename num_bikes_available_sum,total_bikes_available,mechanical_sum,total_mechanical_bikes,ebike_sum,total_electric_bikes \
  "$1"
