"""Machine learning in the QKD network (ITU-T Y.Sup70): the Collector -> Preprocessor -> Model ->
Policy -> Distributor pipeline, QL02 parameter prediction, QL01/CML03 QBER forecasting and KM03
attack and fault detection. Inference needs numpy only; models ship as plain arrays."""
