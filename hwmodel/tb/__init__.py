"""cocotb testbenches for hwmodel/rtl (run by hwmodel.sim.run; they read HWMODEL_TB_DIR)."""
