(bore.nc: drill the bracket's mounting hole, 3 mm deep at its centre)
(work zero: the bracket's front left corner, Z0 on its top face)
G21 G90 G94
G17
M3 S10000
G0 Z5
G0 X15 Y10
G1 Z-3 F100
G4 P0.5
G0 Z5
M5
G0 X0 Y0
M30
